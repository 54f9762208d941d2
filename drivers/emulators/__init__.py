"""Hardware emulators for tests and drills (stdlib only, so an emulator process starts in milliseconds)."""
