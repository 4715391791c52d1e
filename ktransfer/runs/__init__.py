"""Files a run writes: atomic writes (`atomic`) and the run directory (`rundir`: marker,
lock, resume state, flags.cfg)."""
