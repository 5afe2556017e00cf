"""The pageserver's gRPC `page_api`: `page_service.proto` and the modules protoc makes from it.

The `page_service_pb2*` modules are generated (`python -m compute_ctl.storage.proto.generate`)
and committed, so running compute_ctl needs no protoc; a unit test keeps them fresh.
"""
