-- The privileged role may cancel or terminate other sessions and hand that right on.
GRANT pg_signal_backend TO {privileged_role} WITH ADMIN OPTION;
