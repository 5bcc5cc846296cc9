"""Every example in the OpenAPI document answers 2xx (tests/schemathesis.sh).

    python3 tests/schemathesis/examples.py BASE_URL TOKEN

For each operation: one request with every parameter that has an example set to it
(a required parameter without one is a failure), and, for an operation with a body,
one request per content type with that content type's example (one without is a
failure). The server must be loaded with data from `dvault gen` (the demo's kind):
the examples are the ones "Try it out" in the Swagger UI fills in.
"""

import json
import sys
import urllib.error
import urllib.parse
import urllib.request


def ask(method, url, token, content_type=None, body=None):
    req = urllib.request.Request(url, data=body, method=method.upper())
    req.add_header("Authorization", f"Bearer {token}")
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()[:300]
    except urllib.error.HTTPError as e:
        return e.code, e.read()[:300]


def main():
    base, token = sys.argv[1], sys.argv[2]
    with urllib.request.urlopen(base + "/openapi.json", timeout=30) as resp:
        doc = json.load(resp)
    failures, asked = [], 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            where, query, missing = path, {}, []
            for p in op.get("parameters", []):
                if "example" not in p:
                    if p.get("required"):
                        missing.append(p["name"])
                    continue
                value = str(p["example"])
                if p["in"] == "path":
                    where = where.replace("{%s}" % p["name"], urllib.parse.quote(value, safe=""))
                elif p["in"] == "query":
                    query[p["name"]] = value
            name = f"{method.upper()} {path}"
            if missing:
                failures.append(f"{name}: no example for the required {', '.join(missing)}")
                continue
            url = base + where + ("?" + urllib.parse.urlencode(query) if query else "")
            if "requestBody" in op:
                requests = []
                for content_type, content in op["requestBody"]["content"].items():
                    if "example" not in content:
                        failures.append(f"{name} ({content_type}): no example body")
                        continue
                    example = content["example"]
                    text = example if isinstance(example, str) else json.dumps(example)
                    requests.append((content_type, text.encode()))
            else:
                requests = [(None, None)]
            for content_type, body in requests:
                status, answer = ask(method, url, token, content_type, body)
                asked += 1
                label = name + (f" ({content_type})" if content_type else "")
                if not 200 <= status < 300:
                    failures.append(f"{label}: {url} answered {status}: {answer!r}")
                else:
                    print(f"  {status} {label}")
    for f in failures:
        print(f"FAIL {f}")
    print(f"examples: {asked - len(failures)} passed, {len(failures)} failed")
    return 1 if failures or asked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
