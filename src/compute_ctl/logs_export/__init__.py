"""What leaves a compute through syslog: compliance audit logs and the Postgres log export
(`rsyslog` writes their configuration, restarts rsyslog and collects shipped audit files)."""
