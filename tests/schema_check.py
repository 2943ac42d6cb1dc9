"""The D1 schema's checks, on SQLite itself (the engine D1 runs), for tests/schema.rs.

  schema_check.py compare <root>
      Prints {"migrations": ..., "schema": ...}: the structure (tables, columns, checks,
      indexes) of an empty database with every file of migrations/ applied in order, and of
      one with schema.sql applied.

  schema_check.py upgrade <root> <fixtures.sql>
      Applies migrations/0001_*.sql, runs the fixture inserts, applies every later
      migration, and prints every table's rows as JSON.
"""

import json
import re
import sqlite3
import sys
from pathlib import Path

IGNORED_TABLES = {"d1_migrations", "_cf_KV", "_cf_METADATA"}


def migrations(root):
    return sorted((Path(root) / "migrations").glob("[0-9][0-9][0-9][0-9]_*.sql"))


def normalize(sql):
    return re.sub(r"\s+", " ", sql).strip().lower()


def checks(sql):
    """Every CHECK (...) expression in a CREATE TABLE statement, normalized."""
    found = []
    for match in re.finditer(r"\bcheck\s*\(", sql, re.IGNORECASE):
        depth, start = 0, match.end() - 1
        for i in range(start, len(sql)):
            if sql[i] == "(":
                depth += 1
            elif sql[i] == ")":
                depth -= 1
                if depth == 0:
                    found.append(normalize(sql[start + 1 : i]))
                    break
    return sorted(found)


def structure(db):
    tables = {}
    for name, sql in db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ):
        if name in IGNORED_TABLES:
            continue
        columns = [list(row[1:6]) for row in db.execute(f"PRAGMA table_xinfo('{name}')")]
        indexes = []
        for _, index, unique, origin, partial in db.execute(f"PRAGMA index_list('{name}')"):
            cols = [row[2] for row in db.execute(f"PRAGMA index_info('{index}')")]
            index_sql = db.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (index,)
            ).fetchone()
            where = ""
            if index_sql and index_sql[0] and " where " in normalize(index_sql[0]):
                where = normalize(index_sql[0]).split(" where ", 1)[1]
            # Automatic indexes (UNIQUE, PRIMARY KEY) are named by SQLite: compare their shape.
            label = index if not index.startswith("sqlite_autoindex") else f"auto:{','.join(cols)}"
            indexes.append([label, unique, origin, partial, cols, where])
        tables[name] = {"columns": columns, "checks": checks(sql), "indexes": sorted(indexes)}
    return tables


def compare(root):
    from_migrations = sqlite3.connect(":memory:")
    for path in migrations(root):
        from_migrations.executescript(path.read_text())
    from_schema = sqlite3.connect(":memory:")
    from_schema.executescript((Path(root) / "schema.sql").read_text())
    print(json.dumps({"migrations": structure(from_migrations), "schema": structure(from_schema)}))


def upgrade(root, fixtures):
    db = sqlite3.connect(":memory:")
    files = migrations(root)
    db.executescript(files[0].read_text())
    db.executescript(Path(fixtures).read_text())
    for path in files[1:]:
        db.executescript(path.read_text())
    db.row_factory = sqlite3.Row
    dump = {}
    for (name,) in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall():
        dump[name] = [dict(row) for row in db.execute(f"SELECT * FROM {name}")]
    dump["_migrations"] = [path.name for path in files]
    print(json.dumps(dump))


if __name__ == "__main__":
    command, root = sys.argv[1], sys.argv[2]
    if command == "compare":
        compare(root)
    elif command == "upgrade":
        upgrade(root, sys.argv[3])
    else:
        sys.exit(f"unknown command {command}")
