#ifndef TASKWAL_API_VERSION_H_
#define TASKWAL_API_VERSION_H_

// The version of taskwal, in one place: `taskwal --version` prints it, and
// an embedder can log it. Semantic versioning; "-dev" marks a build from
// between releases. The data directory's format has its own version
// (wal/format.h), which `taskwal --version` prints beside this one.
#define TASKWAL_VERSION "0.12.0-dev"

#endif  // TASKWAL_API_VERSION_H_
