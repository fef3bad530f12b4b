"""Text encoder latency and throughput: per variant (fp32, int8 on the CPU; fp16 on a GPU), texts of
64 and 128 tokens, one text per call and batches of 32. The cache is off, so every text runs.

    uv run python bench/text_encoder.py [--encoder DIR] [--providers cpu] [--repeats 200]

On a GPU machine: `--providers cuda,cpu` (the provider that actually ran is recorded; a run whose
provider is not the one asked for says so). Writes bench/results/text_encoder[-<provider>].json/.md
(`--results NAME`: NAME.json/.md instead).

Agreement with the fp32 graph on the CPU: `--write-reference FILE.npz` (on a CPU machine) saves 64
texts and their fp32 embeddings; `--reference FILE.npz` encodes the same texts with each variant
measured and reports the cosine similarity to the reference (min and median), so a GPU's fp16 answers
are checked against the CPU's fp32 ones without carrying the fp32 graph.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.score_latency import RESULTS, machine, percentiles
from features.text.encoder import TextEncoder

WORDS = [
    "loan",
    "pay",
    "rent",
    "card",
    "car",
    "house",
    "roof",
    "kitchen",
    "school",
    "wedding",
    "cash",
    "flow",
    "payroll",
    "stock",
    "shop",
    "van",
    "oven",
    "client",
    "fee",
    "bill",
    "debt",
    "rate",
    "month",
    "year",
    "family",
    "business",
    "repair",
    "supply",
    "order",
    "build",
    "office",
    "store",
]


def texts_of(encoder: TextEncoder, tokens: int, count: int, seed: int) -> list[str]:
    """`count` different texts of exactly `tokens` tokens ([CLS] and [SEP] included)."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        words = list(rng.choice(WORDS, tokens))
        text = " ".join(words)
        ids = encoder.tokenize([text])[0]
        while len(ids) > tokens:
            words.pop()
            text = " ".join(words)
            ids = encoder.tokenize([text])[0]
        if len(ids) == tokens:
            out.append(text)
    return out


def measure(encoder: TextEncoder, texts: list[str], batch: int, repeats: int) -> dict[str, Any]:
    calls = [texts[i : i + batch] for i in range(0, batch * repeats, batch)]
    for call in calls[:5]:
        encoder.encode(call)  # warm-up
    lat = []
    started, cpu = time.perf_counter(), time.process_time()
    for call in calls:
        t = time.perf_counter()
        encoder.encode(call)
        lat.append((time.perf_counter() - t) * 1000)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu  # ONNX Runtime's threads included
    per_call = percentiles(lat)
    return {
        "batch": batch,
        "calls": len(calls),
        "latency_ms_per_call": per_call,
        "ms_per_text_p50": round(per_call["p50"] / batch, 3),
        "texts_per_s": round(batch * len(calls) / elapsed, 1),
        "cpu_ms_per_text": round(cpu * 1000 / (batch * len(calls)), 3),
    }


def reference_texts(encoder: TextEncoder) -> list[str]:
    """64 texts of 16 to 256 tokens, some with punctuation, digits and non-English words."""
    texts = [t for n in (16, 64, 128, 256) for t in texts_of(encoder, n, 12, seed=1000 + n)]
    texts += [
        "Need funds urgently!!! Wire the money today, account 4471-22.",
        "Ampliación del local y compra de maquinaria para la panadería.",
        "扩大店铺经营，购买新设备",
        "Consolidate two credit cards (APR 24.9%) into one payment.",
        "",
        "Roof repair after storm damage; insurer pays 60%, loan covers the rest.",
    ]
    rng = np.random.default_rng(99)
    while len(texts) < 64:
        texts.append(" ".join(rng.choice(WORDS, int(rng.integers(3, 40)))))
    return texts


def agreement(encoder: TextEncoder, reference: Path) -> dict[str, Any]:
    saved = np.load(reference)
    texts = [str(t) for t in saved["texts"]]
    got = encoder.encode(texts)
    want = saved["vectors"]
    cosine = np.sum(got * want, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    return {
        "texts": len(texts),
        "reference": f"{saved['variant']} on {saved['provider']}",
        "cosine_min": round(float(cosine.min()), 6),
        "cosine_median": round(float(np.median(cosine)), 6),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--encoder", type=Path, default=Path("var/encoder"))
    parser.add_argument("--providers", default="cpu")
    parser.add_argument("--variants", default="", help="default: fp32,int8 on the CPU; fp32,fp16 on a GPU")
    parser.add_argument("--repeats", type=int, default=200, help="calls per scenario")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--batches", default="1,32", help="texts per call, comma-separated")
    parser.add_argument("--reference", type=Path, help="report agreement with these fp32 embeddings")
    parser.add_argument("--write-reference", type=Path, help="write fp32 CPU embeddings of 64 texts; exit")
    parser.add_argument("--results", default="", help="results file name (default text_encoder[-GPU])")
    args = parser.parse_args()
    providers = args.providers.split(",")
    if args.write_reference:
        encoder = TextEncoder(args.encoder, providers=["cpu"], variant="fp32", cache_size=0)
        texts = reference_texts(encoder)
        np.savez(
            args.write_reference,
            texts=np.array(texts),
            vectors=encoder.encode(texts),
            variant=encoder.info.variant,
            provider=encoder.info.provider,
        )
        print(f"wrote {len(texts)} texts and their fp32 embeddings to {args.write_reference}")
        return
    gpu = providers[0] in ("cuda", "tensorrt")
    variants = args.variants.split(",") if args.variants else (["fp32", "fp16"] if gpu else ["fp32", "int8"])
    batches = [int(b) for b in args.batches.split(",")]
    rows = []
    agree: dict[str, Any] = {}
    for variant in variants:
        encoder = TextEncoder(
            args.encoder, providers=providers, variant=variant, cache_size=0, threads=args.threads
        )
        if args.reference:
            agree[f"{encoder.info.variant} on {encoder.info.provider}"] = agreement(encoder, args.reference)
            print(json.dumps(agree), flush=True)
        for tokens in (64, 128):
            for batch in batches:
                texts = texts_of(encoder, tokens, batch * (args.repeats + 5), seed=tokens)
                row = measure(encoder, texts[batch * 5 :] + texts[: batch * 5], batch, args.repeats)
                row |= {"variant": encoder.info.variant, "provider": encoder.info.provider, "tokens": tokens}
                rows.append(row)
                print(json.dumps(row), flush=True)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "encoder": encoder.info.identity,
        "providers_asked": providers,
        "threads": args.threads or "ONNX Runtime default",
        "agreement_with_fp32_cpu": agree,
        "runs": rows,
    }
    m = result["machine"]
    md = [
        f"# Text encoder ({result['date']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, GPU: {m['gpu']}. Encoder {result['encoder']}; "
        "providers asked: "
        f"{','.join(providers)}; threads: {result['threads']}. Cache off: every text runs.",
        "",
        f"`uv run --frozen python bench/text_encoder.py {' '.join(sys.argv[1:])}`",
        "",
        "| variant | provider | tokens | batch | p50 ms/call | p99 ms/call | ms/text (p50) | CPU ms/text "
        "| texts/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    md += [
        f"| {r['variant']} | {r['provider']} | {r['tokens']} | {r['batch']} | "
        f"{r['latency_ms_per_call']['p50']} | {r['latency_ms_per_call']['p99']} | "
        f"{r['ms_per_text_p50']} | {r.get('cpu_ms_per_text', '-')} | {r['texts_per_s']} |"
        for r in rows
    ]
    if agree:
        md += ["", "Agreement with the fp32 graph on the CPU (cosine similarity of the embeddings):", ""]
        md += [
            f"- {k}: {v['texts']} texts, min {v['cosine_min']}, median {v['cosine_median']}"
            for k, v in agree.items()
        ]
    suffix = "" if not gpu else f"-{rows[0]['provider'].removesuffix('ExecutionProvider').lower()}"
    name = args.results or f"text_encoder{suffix}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
