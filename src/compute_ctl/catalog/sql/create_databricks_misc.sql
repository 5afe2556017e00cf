-- CreateDatabricksMisc: what databricks_monitor's write probe calls. It answers 1 when the
-- row of public.health_check could be written, and turns any failure into an error whose text
-- names the probe.
CREATE OR REPLACE FUNCTION public.health_check_write_succeeds()
RETURNS pg_catalog.int4 AS $$
BEGIN
    INSERT INTO public.health_check VALUES (1, pg_catalog.now())
        ON CONFLICT (id) DO UPDATE SET updated_at = pg_catalog.now();
    RETURN 1;
EXCEPTION WHEN OTHERS THEN
    RAISE EXCEPTION '[DATABRICKS_SMGR] health_check failed: [%] %', SQLSTATE, SQLERRM;
    RETURN 0;
END;
$$ LANGUAGE plpgsql
