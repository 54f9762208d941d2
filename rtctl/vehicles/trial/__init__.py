"""Multi-car trials: `rtctl.vehicles.trial.launch.main(config_path, out_dir=None, duration=None)` (the `rtctl trial` command)."""
