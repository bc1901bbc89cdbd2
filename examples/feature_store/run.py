"""Materializes the driver statistics into Chorus and reads them back online.

Run from this folder after `python3 generate_data.py` and `feast apply`:

    CHORUS_CLIENT_CONFIG=/path/to/cluster/client.toml python3 run.py
"""

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
from feast import FeatureStore

FEATURES = [
    "driver_hourly_stats:conv_rate",
    "driver_hourly_stats:acc_rate",
    "driver_hourly_stats:avg_daily_trips",
    "driver_hourly_stats:city",
]


def main() -> None:
    here = Path(__file__).resolve().parent
    store = FeatureStore(repo_path=str(here))

    end = datetime.now(timezone.utc)
    store.materialize(start_date=end - timedelta(days=2), end_date=end)

    source = pd.read_parquet(here / "data" / "driver_stats.parquet")
    drivers = sorted(source["driver_id"].unique().tolist())
    online = store.get_online_features(
        features=FEATURES, entity_rows=[{"driver_id": d} for d in drivers]
    ).to_df()
    print(online.head(5).to_string(index=False))

    # The online store holds each driver's newest row.
    latest = source.sort_values("event_timestamp").groupby("driver_id").tail(1)
    latest = latest.set_index("driver_id").loc[drivers]
    assert online["avg_daily_trips"].tolist() == latest["avg_daily_trips"].tolist()
    assert online["city"].tolist() == latest["city"].tolist()
    print(f"{len(drivers)} drivers read from Chorus, each with its newest row")


if __name__ == "__main__":
    main()
