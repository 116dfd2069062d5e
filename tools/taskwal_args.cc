#include "tools/taskwal_args.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

namespace taskwal::tools {

bool ParsedArgs::Has(absl::string_view name) const {
  return flags.find(std::string(name)) != flags.end();
}

std::string ParsedArgs::Get(absl::string_view name,
                            absl::string_view fallback) const {
  auto it = flags.find(std::string(name));
  return it == flags.end() ? std::string(fallback) : it->second;
}

bool ParsedArgs::GetBool(absl::string_view name) const {
  return Get(name, "false") == "true";
}

absl::StatusOr<ParsedArgs> ParseArgs(absl::Span<const std::string> args,
                                     absl::Span<const FlagSpec> specs,
                                     bool stop_at_positional) {
  ParsedArgs parsed;
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (arg == "--") {
      parsed.positional.insert(parsed.positional.end(), args.begin() + i + 1,
                               args.end());
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      if (stop_at_positional) {
        parsed.positional.insert(parsed.positional.end(), args.begin() + i,
                                 args.end());
        break;
      }
      parsed.positional.emplace_back(arg);
      continue;
    }
    absl::string_view body = arg;
    if (!absl::ConsumePrefix(&body, "--")) absl::ConsumePrefix(&body, "-");
    const size_t eq = body.find('=');
    const absl::string_view name = body.substr(0, eq);
    const auto spec =
        std::find_if(specs.begin(), specs.end(),
                     [&](const FlagSpec& s) { return s.name == name; });
    if (spec == specs.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag ", arg.substr(0, arg.find('='))));
    }
    std::string value;
    if (eq != absl::string_view::npos) {
      value = std::string(body.substr(eq + 1));
      if (spec->is_bool() && value != "true" && value != "false") {
        return absl::InvalidArgumentError(absl::StrCat(
            "--", name, " takes no value other than true or false, not \"",
            value, "\""));
      }
    } else if (spec->is_bool()) {
      value = "true";
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "--", name, " needs a value: --", name, "=", spec->value_name));
    }
    parsed.flags[std::string(name)] = std::move(value);
  }
  return parsed;
}

absl::StatusOr<uint64_t> ParseUint64(absl::string_view flag,
                                     absl::string_view value) {
  uint64_t out;
  if (value.empty() || value[0] == '-' || value[0] == '+' ||
      !absl::SimpleAtoi(value, &out)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid value for ", flag, ": \"", value,
                     "\" is not a non-negative integer"));
  }
  return out;
}

absl::StatusOr<int64_t> ParseInt64(absl::string_view flag,
                                   absl::string_view value) {
  int64_t out;
  if (value.empty() || value[0] == '+' || !absl::SimpleAtoi(value, &out)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid value for ", flag, ": \"", value, "\" is not an integer"));
  }
  return out;
}

std::string FlagHelp(absl::Span<const FlagSpec> specs) {
  std::vector<std::string> left;
  size_t width = 0;
  for (const FlagSpec& s : specs) {
    left.push_back(s.is_bool() ? absl::StrCat("--", s.name)
                               : absl::StrCat("--", s.name, "=", s.value_name));
    width = std::max(width, left.back().size());
  }
  std::string out;
  for (size_t i = 0; i < specs.size(); ++i) {
    absl::StrAppend(
        &out, absl::StrFormat("  %-*s  %s\n", static_cast<int>(width), left[i],
                              specs[i].help));
  }
  return out;
}

}  // namespace taskwal::tools
