//! netperf 2.7 control protocol.
