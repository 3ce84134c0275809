// The admin console's page (server/console/), built into the binary by
// CMake (console_assets.cc.in).
#ifndef TXCOORD_SERVER_CONSOLE_ASSETS_H_
#define TXCOORD_SERVER_CONSOLE_ASSETS_H_

namespace txcoord::coordinator {

extern const char* const kConsoleIndexHtml;
extern const char* const kConsoleAppJs;
extern const char* const kConsoleStyleCss;

}  // namespace txcoord::coordinator

#endif  // TXCOORD_SERVER_CONSOLE_ASSETS_H_
