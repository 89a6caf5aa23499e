"""The HTTP and WebSocket server: the app factory, middleware, the turn pipeline, routes
and the management API. Speaks to clients through ``app.wire`` codecs and to sessions
through ``actors``."""

from ._app import create_app as create_app
