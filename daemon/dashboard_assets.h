#ifndef TASKWAL_DAEMON_DASHBOARD_ASSETS_H_
#define TASKWAL_DAEMON_DASHBOARD_ASSETS_H_

// The web dashboard's static files (daemon/dashboard/), compiled into
// taskwald by daemon/embed_assets.sh so that the binary needs nothing
// beside it.

#include "absl/strings/string_view.h"

namespace taskwal::daemon {

struct DashboardAsset {
  absl::string_view name;          // "index.html", "dashboard.js", ...
  absl::string_view content_type;  // For the Content-Type header.
  absl::string_view body;
};

// The file with this base name; nullptr if there is none.
const DashboardAsset* FindDashboardAsset(absl::string_view name);

}  // namespace taskwal::daemon

#endif  // TASKWAL_DAEMON_DASHBOARD_ASSETS_H_
