"""`nas devices`: the device registry (built-in and user files), each device's kind, runtime, peaks and tables."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser("devices", help="list target devices (specs with sources) and their measured tables")
    p.add_argument("name", nargs="?", help="show one device's full spec (JSON) instead of the list")
    p.add_argument("--devices-dir", help="extra directory of device JSON files (also $HWNAS_DEVICES_DIR)")
    p.add_argument("--tables-dir", help="extra directory of lookup tables named <device>-*.json")
    p.set_defaults(func=run)


def _row(device, tables) -> str:
    peaks = ", ".join(f"{p} {v:g}" for p, v in device.peak_gflops.items())
    measured = ", ".join(t.name for t in tables) if tables else "-"
    return (f"{device.name:<20} {device.kind:<4} {device.runtime_name:<12} {peaks:<40} "
            f"{device.memory_bandwidth_gbs:>7g} {device.power_w['active']:>7g}  {measured}")


def run(args) -> int:
    from latency_models.devices import get_device, list_devices, measured_tables
    if args.name:
        device = get_device(args.name, args.devices_dir)
        tables = [str(t) for t in measured_tables(device.name, args.tables_dir)]
        print(json.dumps({**device.to_dict(), "file": device.path, "measured_tables": tables}, indent=2))
        return 0
    print(f"{'device':<20} {'kind':<4} {'runtime':<12} {'peak GFLOP/s (GOP/s int8)':<40} {'GB/s':>7} "
          f"{'W act':>7}  measured tables")
    for name in list_devices(args.devices_dir):
        device = get_device(name, args.devices_dir)
        print(_row(device, measured_tables(name, args.tables_dir)))
    return 0
