"""Model training: replay the simulator through the shared feature code, fit, calibrate, register."""
