"""The REST door: the Sanic app, its routes, auth, errors and the event stream."""
