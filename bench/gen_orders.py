"""Write a synthetic Shopify orders export (and its products export) for the benchmark.

    python bench/gen_orders.py --lines 1000000 --out bench/data/orders.csv

1,000,000 line items make about 400,000 orders from 150,000 customers over three years. The
same --seed and --lines give the same bytes. Rows are streamed to disk.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webapp.demo.generator import Scale, SyntheticShop  # noqa: E402


def generate(lines: int, out: Path, seed: int = 42, products: Path | None = None) -> dict:
    out.parent.mkdir(parents=True, exist_ok=True)
    shop = SyntheticShop(Scale.for_lines(lines), seed=seed)
    if products is not None:
        shop.write_products(products)
    partial = out.with_name(out.name + ".partial")
    stats = shop.write_orders(partial)
    partial.replace(out)  # an interrupted run never leaves a truncated file behind
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="line items (approx.)")
    parser.add_argument("--out", type=Path, default=Path("bench/data/orders.csv"))
    parser.add_argument("--products", type=Path, help="also write the products export here")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    started = time.perf_counter()
    stats = generate(args.lines, args.out, args.seed, args.products)
    size = args.out.stat().st_size / 1e6
    print(
        f"{args.out}: {stats['customers']:,} customers, {stats['orders']:,} orders, "
        f"{stats['lines']:,} lines, {size:.0f} MB in {time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
