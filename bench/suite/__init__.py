"""The comparative proxy benchmark suite behind `bench/run.py`.

One module per concept: scenarios (what is measured), peers (who is measured, each from a config
generated to match remora's), loads (how: wrk closed loop, the open-loop generator, idle
connections), procs (RSS and CPU from /proc), and report/plots (what is written).
"""
