"""The realtime WebSocket protocol (Qwen-Omni-Realtime and realtime ASR): core and connection."""
