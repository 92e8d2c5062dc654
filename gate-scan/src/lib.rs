//! gate's secret scanner, a library with no knowledge of sockets: rules as data, a literal
//! prefilter that picks the rules worth confirming, confirming regexes, known values.
