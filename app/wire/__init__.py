"""Wire formats, apart from transport: the Anthropic, OpenAI and WebSocket codecs, SSE
framing, JSON parsing. Nothing here imports quart routes or ``app.http``."""
