"""Code shared by the flask zoo services: the app factory with the error
responder (`web`), the HTTP client wrapper (`upstream`), the PostgreSQL helpers (`db`)."""
