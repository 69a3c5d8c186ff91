"""Helm v4's own library (PyPI helm-python-sdk, pinned by scripts/setup.sh), for tests/helm.rs.

    helm.py render <chart dir> <values.json> <release> <namespace>
        checks the values against values.schema.json as `helm install` does, renders every
        template offline (no cluster) and prints {"<template path>": "<manifest>", ...} as JSON;
    helm.py lint <chart dir> <values.json>
        prints `helm lint --strict`'s report as JSON.

A Helm error ends the run with exit status 1 and its message on stderr.
"""

import json
import sys

import helm_python as helm


def main(argv):
    cmd, chart_dir, values_file = argv[1], argv[2], argv[3]
    with open(values_file) as f:
        values = json.load(f)
    try:
        if cmd == "render":
            release, namespace = argv[4], argv[5]
            chart = helm.Chart.load(chart_dir)
            chart.validate_schema(values)
            out = chart.render(values, name=release, namespace=namespace, is_install=True)
        elif cmd == "lint":
            out = helm.lint(chart_dir, values, strict=True)
        else:
            raise SystemExit(f"unknown command {cmd}")
    except helm.HelmError as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
