"""The offline Anthropic-compatible upstream: a scripted fake of ``POST /v1/messages``
that the real ``claude`` CLI can talk to, for tests, demos and the docs."""
