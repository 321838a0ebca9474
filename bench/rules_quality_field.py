"""Detection quality against the field model (bench/field_model.py): towns lykta has not met, at 39, 62 and
68 degrees north, in December and June.

For each place and season: a town of ``--lamps`` streetlights on cabinets and circuits of 15-60 lamps,
mixed lamp types, photocells and schedules, controllers reporting every 1-15 minutes (one cabinet every 15,
one behind a batching gateway); a week of readings written through ingest's own write path (the week is
history stored at once: its receive times are what the model says, delays and batches included); then every
default rule through the live service's evaluator (rules/replay.py). Prints, per fault type: faults that
could show, faults kept apart (below a documented minimum, or never able to show), findings, correct ones,
precision and recall with their counts, median delay; and every false finding with its likely cause.

    .venv/bin/python bench/rules_quality_field.py [--places oeste,62n,68n] [--seasons december,june]
        [--lamps 600] [--per-type 6] [--seed 11]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import field_model as model  # noqa: E402

from floor.inventory import AssetRecord  # noqa: E402
from lykta import services  # noqa: E402
from rules import definitions  # noqa: E402
from rules.replay import Episode, backfill  # noqa: E402
from storage import assets as asset_store  # noqa: E402
from storage import migrations, tenants  # noqa: E402
from storage.ingest import IngestBatch, write_batch  # noqa: E402

GRACE_S = 3 * 3600
LAMP_FAULTS = {"lampFailure", "lampUnexpectedOn", "cyclingFailure", "photocellFailure", "powerDeviation"}


def records(town: model.Town) -> list[AssetRecord]:
    out = []
    for cabinet, (lat, lon) in town.cabinets.items():
        out.append(
            AssetRecord(
                "model",
                cabinet,
                "cabinet",
                lat=lat,
                lon=lon,
                device_id=f"M-{cabinet}",
                device_kind="cabinet_meter",
                reporting_interval_s=60,
            )
        )
    for circuit in sorted({lamp.circuit for lamp in town.lamps}):
        out.append(AssetRecord("model", circuit, "circuit", parent_id=circuit.rsplit("-K", 1)[0]))
    for lamp in town.lamps:
        out.append(
            AssetRecord(
                "model",
                lamp.asset_id,
                "streetlight",
                parent_id=lamp.circuit,
                lat=lamp.lat,
                lon=lamp.lon,
                rated_power_w=lamp.rated_w,
                device_id=lamp.device_id,
                device_kind="streetlight_controller",
                reporting_interval_s=600,  # what the inventory says; the controllers do otherwise
            )
        )
    return out


def write(url: str, town: model.Town, sky: model.Sky, faults: dict[str, dict[str, object]], seed: int) -> int:
    rng = np.random.default_rng(seed)
    with psycopg.connect(url) as conn:
        keys = dict(conn.execute("SELECT device_id, device_key FROM devices").fetchall())
        ids: dict[str, int] = dict(conn.execute("SELECT name, metric_id FROM metrics").fetchall())
    series = [(lamp.device_id, lamp.skew, *model.lamp_series(town, lamp, sky, faults.get(lamp.asset_id), rng))
              for lamp in town.lamps]  # fmt: skip
    series += [(f"M-{c}", 0.0, *model.cabinet_series(town, c, rng)) for c in town.cabinets]
    total = 0
    batch = IngestBatch()

    async def flush(b: IngestBatch) -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await write_batch(conn, b)

    for device, skew, t, received, metrics in series:
        names = list(metrics)
        columns = [metrics[n] for n in names]
        device_t = t + skew  # the controller's clock
        for i in range(len(t)):
            batch.readings.add_message(
                keys[device],
                float(received[i]),
                [(float(device_t[i]), ids[n], float(c[i])) for n, c in zip(names, columns, strict=True)],
            )
        total += len(t)
        if len(batch.readings) >= 200_000:
            asyncio.run(flush(batch))
            batch = IngestBatch()
    asyncio.run(flush(batch))
    return total


def cause(f: tuple[str, str, Episode], town: model.Town, switches: dict[str, np.ndarray]) -> str:
    asset, fault, ep = f
    lamps = {lamp.asset_id: lamp for lamp in town.lamps}
    lamp = lamps.get(asset)
    if lamp is not None:
        near = switches.get(asset, np.array([]))
        if fault in LAMP_FAULTS and len(near) and np.min(np.abs(near - ep.observed_at)) < 3600:
            return "twilight (within an hour of its switching)"
        for truth in town.truth:
            if truth.asset_id == asset and truth.start - 3600 < ep.observed_at < truth.end + GRACE_S:
                return f"its own {truth.fault}"
        for truth in town.truth:
            if (
                truth.asset_id == lamp.cabinet
                and truth.fault == "supplyLoss"
                and truth.start - 3600 < ep.observed_at < truth.end + 3600
            ):
                return "its cabinet's outage"
            sibling = lamps.get(truth.asset_id)
            if (
                sibling is not None
                and sibling.circuit == lamp.circuit
                and truth.start - 3600 < ep.observed_at < truth.end + 3600
            ):
                return f"a neighbour's {truth.fault}"
        if lamp.batched:
            return "behind a batching gateway"
        if lamp.schedule is not None:
            return "switched by a schedule"
    return "other"


def score(town: model.Town, found: list[tuple[str, str, Episode]], switches: dict[str, np.ndarray]) -> list[str]:
    lines = [
        f"{'fault':<22}{'could show':>11}{'kept apart':>11}{'findings':>9}{'correct':>8}{'precision':>15}"
        f"{'recall':>13}{'median delay':>14}"
    ]
    codes = sorted({t.fault for t in town.truth} | {f for _, f, _ in found})
    false: list[str] = []
    for code in codes:
        seen = [t for t in town.truth if t.fault == code and t.seen]
        apart = [t for t in town.truth if t.fault == code and not t.seen]
        mine = [(a, ep) for a, f, ep in found if f == code]

        def hit(t: model.Truth, a: str, ep: Episode) -> bool:
            end = ep.cleared_at if ep.cleared_at is not None else float("inf")
            return a == t.asset_id and ep.observed_at <= t.end + GRACE_S and end >= t.start - 900

        found_truth = [any(hit(t, a, ep) for a, ep in mine) for t in seen]
        # a drifting photocell also leaves its lamp dark at night (drifting down) or lit by day (up): findings
        # it explains are right about the lamp, not false
        causes = {code, "photocellFailure"} if code in ("lampFailure", "lampUnexpectedOn") else {code}
        if code == "lampFailure":
            causes.add("cyclingFailure")  # a cycling lamp is dark half the night
        explained = [any(hit(t, a, ep) for t in town.truth if t.fault in causes) for a, ep in mine]
        delays = [
            min(ep.detected_at - t.start for a, ep in mine if hit(t, a, ep)) / 60
            for t, ok in zip(seen, found_truth, strict=True)
            if ok
        ]
        good = sum(explained)
        precision = f"{good / len(mine):.2f} ({good}/{len(mine)})" if mine else "-"
        recall = f"{sum(found_truth) / len(seen):.2f} ({sum(found_truth)}/{len(seen)})" if seen else "-"
        delay = f"{statistics.median(delays):.0f} min" if delays else "-"
        lines.append(
            f"{code:<22}{len(seen):>11}{len(apart):>11}{len(mine):>9}{good:>8}{precision:>15}{recall:>13}{delay:>14}"
        )
        for (a, ep), ok in zip(mine, explained, strict=True):
            if not ok:
                false.append(f"  false {code} on {a} at {time.strftime('%d %H:%M', time.gmtime(ep.observed_at))}: "
                             f"{cause((a, code, ep), town, switches)}")  # fmt: skip
    return lines + (["false findings by cause:", *false] if false else ["no false findings"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--places", default="oeste,62n,68n")
    parser.add_argument("--seasons", default="december,june")
    parser.add_argument("--lamps", type=int, default=600)
    parser.add_argument("--per-type", type=int, default=6)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="lykta-bench-field-"))
    tmp.chmod(0o755)
    state = services.up(tmp / "state", ephemeral=True)
    assert state.postgres is not None
    try:
        for place in args.places.split(","):
            for season in args.seasons.split(","):
                name = f"field_{place}_{season}"
                with psycopg.connect(state.postgres.url(), autocommit=True) as conn:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                url = state.postgres.url(name)
                with psycopg.connect(url, autocommit=True) as conn:
                    migrations.migrate(conn)
                    tenants.upsert(conn, "town", "Field town", "sv", "Europe/Stockholm")
                began = time.monotonic()
                town = model.build(place, season, args.lamps, args.seed)
                sky = model.Sky(*model.PLACES[place][:2], town.start, town.end)
                faults = model.inject(town, sky, args.seed, args.per_type)
                model.observable(town, sky, faults)
                with psycopg.connect(url, autocommit=True) as conn:
                    asset_store.import_records(conn, "town", records(town), "field model")
                messages = write(url, town, sky, faults, args.seed)
                written = time.monotonic() - began
                began = time.monotonic()
                with psycopg.connect(url) as conn:
                    found = [
                        (x.asset_id, r.fault, e)
                        for r, x, e in backfill(
                            conn, definitions.load(), town.start + model.LEARN_DAYS * 86400, town.end
                        )
                    ]
                lamps = len(town.lamps)
                print(
                    f"\n{place} {season}: {lamps} streetlights, {len(town.cabinets)} cabinets, "
                    f"{len({lamp.circuit for lamp in town.lamps})} circuits; {messages:,} reports written in "
                    f"{written:.0f} s, rules over the last seven days in {time.monotonic() - began:.0f} s"
                )
                learned = town.start + model.LEARN_DAYS * 86400
                found = [f for f in found if f[2].observed_at >= learned]
                for line in score(town, found, model.lamp_switch_minutes(town, sky)):
                    print(line, flush=True)
    finally:
        services.down(tmp / "state")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
