//! How to make the system, browsers and language runtimes trust gate's CA (`gate ca trust`).
