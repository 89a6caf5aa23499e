"""Clients of ccactors: the WebSocket client library and the ``ccactors chat`` terminal."""
