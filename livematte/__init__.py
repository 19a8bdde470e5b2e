"""livematte: real-time video background replacement with portrait matting."""

__version__ = "0.1.0"
