"""Schemathesis hooks for tests/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

POST /events takes NDJSON (`application/x-ndjson`): its schema is a string (the lines);
schemathesis has no serializer for that media type, so it is sent as is.
"""

import json

import schemathesis

# Hypothesis describes a strategy's lambdas by parsing the source of the module that
# defines them with `ast`. On CPython 3.11 before 3.11.9 a failed parse can leave the
# AST recursion depth miscounted (python/cpython#106905), and every later parse then
# fails with "SystemError: AST constructor recursion depth mismatch", which
# schemathesis reports as a runtime error of whatever operation it was generating
# for: a fault of the test tool, not of the API. A description is only a label, so
# one that cannot be made is replaced by a generic one.
try:
    from hypothesis.internal import lambda_sources as _lambda_sources

    _describe = _lambda_sources._lambda_description

    def _tolerant_description(f, *args, **kwargs):
        try:
            return _describe(f, *args, **kwargs)
        except SystemError:
            return "lambda: <source not parsed>"

    _lambda_sources._lambda_description = _tolerant_description
except (ImportError, AttributeError):  # another hypothesis: nothing to work around
    pass


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return (json.dumps(value) + "\n").encode()
