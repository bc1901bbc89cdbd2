"""Writes data/driver_stats.parquet: a day of hourly rows for a few hundred drivers.

python3 generate_data.py [--drivers 500]
"""

import argparse
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

CITIES = ["Lisbon", "Oslo", "Quito", "Hanoi", "Accra"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--drivers", type=int, default=500)
    args = p.parse_args()

    rng = np.random.default_rng(42)
    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    hours = [end - timedelta(hours=h) for h in range(24)]
    ids = np.repeat(np.arange(1000, 1000 + args.drivers), len(hours))
    ts = np.tile(pd.to_datetime(hours, utc=True), args.drivers)
    df = pd.DataFrame(
        {
            "driver_id": ids.astype("int64"),
            "event_timestamp": ts,
            "created": ts,
            "conv_rate": rng.random(len(ids)).astype("float32"),
            "acc_rate": rng.random(len(ids)).astype("float32"),
            "avg_daily_trips": rng.integers(0, 1000, len(ids)).astype("int64"),
            "city": [CITIES[i % len(CITIES)] for i in ids],
        }
    )
    out = Path(__file__).resolve().parent / "data" / "driver_stats.parquet"
    out.parent.mkdir(exist_ok=True)
    df.to_parquet(out)
    print(f"wrote {len(df)} rows for {args.drivers} drivers to {out}")


if __name__ == "__main__":
    main()
