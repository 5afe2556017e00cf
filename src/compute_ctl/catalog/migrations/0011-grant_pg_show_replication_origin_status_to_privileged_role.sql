-- The privileged role may see the replication origins' progress.
GRANT EXECUTE ON FUNCTION pg_catalog.pg_show_replication_origin_status() TO {privileged_role};
