"""Flight Streaming Gold: Silver_ML flight observations -> real-time Gold tables on Delta Lake."""

__version__ = "0.1.0"
