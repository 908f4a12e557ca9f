"""Video and image decoding, and checks that media decode as training and evaluation will."""
