"""Real-time delivery: user event channels, the WebSocket endpoint and presence."""
