-- PostgreSQL 16 and later: the privileged role may export snapshots and log standby snapshots
-- (what logical replication tools need to synchronise a copy).
DO $migration$
BEGIN
    IF pg_catalog.current_setting('server_version_num')::pg_catalog.int4 >= 160000 THEN
        EXECUTE pg_catalog.format(
            'GRANT EXECUTE ON FUNCTION pg_catalog.pg_export_snapshot() TO %I',
            {privileged_role_literal});
        EXECUTE pg_catalog.format(
            'GRANT EXECUTE ON FUNCTION pg_catalog.pg_log_standby_snapshot() TO %I',
            {privileged_role_literal});
    END IF;
END
$migration$;
