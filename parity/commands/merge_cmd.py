"""`genet-parity merge`: shard results files -> the summary of one whole run;
a torch-only and a Paddle-only run's files -> the summary of a run of both
(parity.accuracy.pairing)."""
from __future__ import annotations

HELP = ("Combine the results files of `eval --shard K/N` runs into the summary a single run would give, or pair a "
        "torch-only and a Paddle-only run of the same images into the summary of a run of both.")


def add_arguments(p):
    p.add_argument("results", nargs="+", metavar="RESULTS",
                   help="the N shards' --results files (JSON lines), or a `--framework torch` run's file and a "
                        "`--framework paddle` run's file")
    p.add_argument("--json", metavar="PATH", help="write the merged summary as JSON")
    p.add_argument("--results", dest="out_results", metavar="PATH",
                   help="pairing: also write the paired results file, a run of both frameworks "
                        "(for `certify --eval-results`)")


def merge(paths) -> dict:
    """Summary of the union of shard files; refuses anything that would not
    equal a single run: different runs, missing, repeated or unfinished shards."""
    from converters.files.paths import identity

    from parity.inputs.data import DataError
    from parity.accuracy.summary import summarize
    from parity.accuracy.results import RECORD_TYPES, identity_mismatch, read_results

    first_name = {}
    for p in paths:  # one file given twice, by any name, is a repeated shard
        key = identity(p)
        twin = next((q for k, q in first_name.items() if k.same(key)), None)
        if twin is not None:
            raise DataError(p, f"is the same file as {twin}, given twice")
        first_name[key] = p
    loaded = [(p, r.header, r.records) for p in paths for r in [read_results(p)]]
    from parity.accuracy.pairing import is_pair, pair, paired_summary

    if is_pair([h for _, h, _ in loaded]):
        return paired_summary(*pair([read_results(p) for p in paths]))
    first_path, first, _ = loaded[0]
    for path, header, _ in loaded[1:]:
        bad = identity_mismatch(first, header)
        if bad:
            raise DataError(path, f"belongs to a different run than {first_path} (differs in {', '.join(bad)})")
    shards = [h.get("shard") for _, h, _ in loaded]
    if None in shards:
        if len(loaded) > 1:
            unsharded = next(p for p, h, _ in loaded if h.get("shard") is None)
            raise DataError(unsharded, "is an unsharded run; merge takes the files of `eval --shard K/N` runs")
    else:
        n = shards[0][1]
        by_k = {}
        for path, header, _ in loaded:
            k, n_k = header["shard"]
            if n_k != n:
                raise DataError(path, f"is shard {k}/{n_k}, the others are of {n}")
            if k in by_k:
                raise DataError(path, f"repeats shard {k}/{n} (also in {by_k[k]})")
            by_k[k] = path
        missing = sorted(set(range(n)) - set(by_k))
        if missing:
            raise DataError(None, f"shard(s) {', '.join(f'{k}/{n}' for k in missing)} missing: give all {n} files")
    records, checks, expected = {}, [], 0
    for path, header, recs in loaded:
        checks += [dict(r, shard=header.get("shard")) for r in recs if r["type"] == "check"]
        recs = [r for r in recs if r["type"] in RECORD_TYPES]
        done = {r["index"] for r in recs}
        if len(done) != header["expected"]:
            raise DataError(path, f"is unfinished: {len(done)} of {header['expected']} images "
                                  f"(finish it with `genet-parity eval ... --shard {header['shard'][0]}/"
                                  f"{header['shard'][1]} --resume`)" if header.get("shard") else
                                  f"is unfinished: {len(done)} of {header['expected']} images")
        for r in recs:
            if r["index"] in records:
                raise DataError(path, f"image {r['path']} (index {r['index']}) is also in another shard")
            records[r["index"]] = r
        expected += header["expected"]
    return summarize({**first, "shard": None}, list(records.values()) + checks, expected=expected)


def run(args) -> int:
    from converters.files.paths import refuse_output_is_input

    from parity.commands.eval_cmd import finish, print_summary, write_json
    from parity.core.textout import Out

    refuse_output_is_input([("--json", args.json), ("--results", args.out_results)],
                           [(f"shard {p}", p) for p in args.results])
    summary = merge(args.results)
    if args.out_results:
        write_paired(args.results, args.out_results)
    print_summary(Out(), summary)
    if summary.get("environments"):
        envs = summary["environments"]
        out = Out()
        for fw in ("torch", "paddle"):
            e = envs.get(fw) or {}
            out.print(f"{fw} ran in its own environment: torch {e.get('torch', '?')}, paddle {e.get('paddle', '?')}, "
                      f"python {e.get('python', '?')}, {e.get('device', '?')}"
                      + (f" ({e['gpu']})" if e.get("gpu") else "") + f" ({summary['paired_from'][fw]})")
        out.print("Largest logit difference: not measured (each file holds its framework's top-5 classes, "
                  "not its logits)")
    if args.json:
        write_json(args.json, summary)
    return finish(summary, ", ".join(args.results))


def write_paired(paths, out_path):
    """The paired run of both frameworks as one results file (atomically)."""
    import os

    from parity.accuracy.pairing import is_pair, pair
    from parity.accuracy.results import read_results, write_results_file
    from parity.inputs.data import DataError

    loaded = [read_results(p) for p in paths]
    if not is_pair([r.header for r in loaded]):
        raise DataError(out_path, "--results writes a paired file: give one torch-only and one Paddle-only run")
    if os.path.exists(out_path):
        raise DataError(out_path, "already exists (nothing was overwritten)")
    header, records, checks = pair(loaded)
    write_results_file(out_path, header, checks, records)

