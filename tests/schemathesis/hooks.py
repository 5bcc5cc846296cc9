"""Schemathesis hooks for tests/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

POST /events takes NDJSON (`application/x-ndjson`): its schema is a string (the lines);
schemathesis has no serializer for that media type, so it is sent as is.
"""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return (json.dumps(value) + "\n").encode()
