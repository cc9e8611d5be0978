// Package browsertest drives headless Chromium (chromedp) for the
// dashboard's browser tests: it finds the browser, installing Debian's
// package with scripts/chromium.sh when it is missing, records every
// console error the page logs, and knows where screenshots go.
//
// It is test support only and knows nothing of Sluice's packages.
package browsertest
