"""The export formats of `ktransfer.deploy.catalog.FORMATS`, one module each."""
