"""voice-agent: an always-on voice assistant daemon on Alibaba Cloud Model Studio (DashScope)."""

__version__ = "0.1.0"
