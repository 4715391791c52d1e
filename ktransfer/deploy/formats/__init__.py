"""The export formats of `ktransfer.deploy.conversion.FORMATS`, one module each."""
