"""Training: the autoencoder, its loop, one job per entry and seed, the run driver, Ray workers, process settings."""
