"""The IEEE 2030.5 gateway: the utility server's HTTP face (device API and admin API)."""
