"""The Autobahn TestSuite run kept in the project: `make conformance` (docs/conformance.md)."""
