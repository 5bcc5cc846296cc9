#!/usr/bin/env python3
"""Write a day-2 delta of TPC-H CSV files: about 1% new and changed rows.

    delta.py DATA_DIR OUT_DIR

Changed rows: 1% of customers (account balance), suppliers (account balance) and
parts (retail price), 0.5% of orders (status O -> F) with their line items (status,
return flag). New rows: 0.5% more orders (copies of existing ones under new keys) with
their line items. Deterministic: the same input gives the same delta.
"""
import csv
import os
import sys


def rows(path):
    with open(path, newline="") as f:
        r = csv.reader(f)
        header = next(r)
        yield header
        yield from r


def write(out, name, header, body):
    with open(os.path.join(out, name), "w", newline="") as f:
        w = csv.writer(f, quoting=csv.QUOTE_MINIMAL)
        w.writerow(header)
        n = 0
        for row in body:
            w.writerow(row)
            n += 1
    return n


def changed(path, col, every, change):
    it = rows(path)
    header = next(it)
    i = header.index(col)

    def body():
        for k, row in enumerate(it):
            if k % every == 0:
                row[i] = change(row[i])
                yield row

    return header, body()


def cents(delta):
    return lambda v: f"{float(v) + delta:.2f}"


def main():
    data, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    counts = {}
    for name, col, change in [
        ("customer.csv", "c_acctbal", cents(1.0)),
        ("supplier.csv", "s_acctbal", cents(1.0)),
        ("part.csv", "p_retailprice", cents(0.5)),
    ]:
        header, body = changed(os.path.join(data, name), col, 100, change)
        counts[name] = write(out, name, header, body)

    # orders: every 200th changes status, every 200th (offset 100) is copied as new
    it = rows(os.path.join(data, "orders.csv"))
    oh = next(it)
    key, status = oh.index("o_orderkey"), oh.index("o_orderstatus")
    all_orders = list(it)
    max_key = max(int(r[key]) for r in all_orders)
    changed_keys, new_keys = set(), {}
    body = []
    for k, r in enumerate(all_orders):
        if k % 200 == 0:
            r = list(r)
            r[status] = "F"
            changed_keys.add(r[key])
            body.append(r)
        elif k % 200 == 100:
            r = list(r)
            new = str(max_key + 1 + len(new_keys))
            new_keys[r[key]] = new
            r[key] = new
            body.append(r)
    counts["orders.csv"] = write(out, "orders.csv", oh, body)

    it = rows(os.path.join(data, "lineitem.csv"))
    lh = next(it)
    lkey, lstatus, rflag = lh.index("l_orderkey"), lh.index("l_linestatus"), lh.index("l_returnflag")

    def lines():
        for r in it:
            if r[lkey] in changed_keys:
                r[lstatus] = "F"
                r[rflag] = "R"
                yield r
            elif r[lkey] in new_keys:
                r[lkey] = new_keys[r[lkey]]
                yield r

    counts["lineitem.csv"] = write(out, "lineitem.csv", lh, lines())
    for name, n in counts.items():
        print(f"{name}: {n} rows")


if __name__ == "__main__":
    main()
