"""Remote extensions: extensions whose files are not installed in the compute image but
fetched on demand from the extension gateway (`--remote-ext-base-url`).

The spec's `remote_extensions` (a RemoteExtSpec) says which extensions this compute may use,
their control files, and which library belongs to which extension. `index` resolves names to
archives, `install` asks `pg_config` where files go and puts them there, `fetch` downloads and
unpacks one archive, and `manager` ties them to a compute: the start-up step and the
de-duplicated downloads behind `POST /extension_server/{filename}`.
"""
