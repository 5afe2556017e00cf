DO $check$
BEGIN
    IF pg_catalog.current_setting('server_version_num')::pg_catalog.int4 < 160000 THEN
        RETURN;
    END IF;
    IF NOT (pg_catalog.has_function_privilege({privileged_role_literal},
                'pg_catalog.pg_export_snapshot()', 'EXECUTE')
            AND pg_catalog.has_function_privilege({privileged_role_literal},
                'pg_catalog.pg_log_standby_snapshot()', 'EXECUTE')) THEN
        RAISE EXCEPTION 'the privileged role cannot export and log snapshots';
    END IF;
END
$check$;
