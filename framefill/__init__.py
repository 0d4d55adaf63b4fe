"""framefill: video frame interpolation (FILM-style and ConvLSTM models) from the command line."""

__version__ = "0.1.0"
