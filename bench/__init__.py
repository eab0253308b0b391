"""LossBench: which reconstruction loss should an image autoencoder use, and what does it cost?"""

__version__ = "0.1.0"
