"""Pure domain rules and objects: no gRPC, protobuf or SQL."""
