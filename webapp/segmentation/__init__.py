"""Customer profiles and segments, computed by refresh runs with set-based SQL.

`refresh` runs a refresh (lock, staging, swap, run record); `profiles` and `traits` hold its
SQL; `rfm` the score map; `dialect` the few fragments SQLite and PostgreSQL spell
differently; `export` the profiles as CSV or JSON.
"""
