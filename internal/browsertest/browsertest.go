package browsertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// repoRoot is the directory holding go.mod, found upwards from the test's
// working directory (the package's own directory).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Path finds Chromium, installing Debian's package with
// scripts/chromium.sh when it is missing; "" if that is impossible (the
// reason is logged).
func Path(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	root, err := repoRoot()
	if err != nil {
		t.Logf("installing chromium: %v", err)
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(root, "scripts", "chromium.sh"), "install").Output()
	if err != nil {
		t.Logf("installing chromium failed: %v", err)
		return ""
	}
	return strings.TrimSpace(string(out))
}

// ArtifactDir is where screenshots go: $SLUICE_ARTIFACTS, or .artifacts/
// at the repository root (CI keeps either).
func ArtifactDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("SLUICE_ARTIFACTS")
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, ".artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Browser is one headless Chromium with one tab; Ctx drives the tab.
type Browser struct {
	Ctx context.Context

	mu     sync.Mutex
	errors []string
}

// Open starts Chromium at path with a window of 1280×1400 and starts
// recording console errors, uncaught exceptions and error log entries
// (failed loads among them). The browser is closed when the test ends;
// every action on Ctx fails after timeout.
func Open(t testing.TB, path string, timeout time.Duration) *Browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 1400), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() { cancelT(); cancel(); cancelA() })
	b := &Browser{Ctx: ctx}
	if err := chromedp.Listen(ctx, b.record); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("enable the log domain: %v", err)
	}
	return b
}

func (b *Browser) record(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError {
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, fmt.Sprintf("%v %s", a.Value, a.Description))
			}
			b.errors = append(b.errors, "console.error: "+strings.Join(parts, " "))
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		b.errors = append(b.errors, fmt.Sprintf("exception: %s at %s:%d", msg, d.URL, d.LineNumber))
	case *cdplog.EventEntryAdded:
		if ev.Entry.Level == cdplog.EntryLevelError {
			b.errors = append(b.errors, "log: "+ev.Entry.Text+" "+ev.Entry.URL)
		}
	}
}

// Errors returns the console errors recorded so far.
func (b *Browser) Errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.errors)
}

// Attr reads one attribute of the first element matching sel; the test
// fails (with the console errors so far) if there is none.
func (b *Browser) Attr(t testing.TB, sel, name string) string {
	t.Helper()
	v, err := chromedp.Run(b.Ctx, chromedp.AttributeValue(chromedp.CSS(sel), name))
	if err != nil {
		t.Fatalf("%s[%s]: %v (console: %v)", sel, name, err, b.Errors())
	}
	return v.Value
}

// Screenshot saves a full-page PNG as name under ArtifactDir and returns
// its path.
func (b *Browser) Screenshot(t testing.TB, name string) string {
	t.Helper()
	shot, err := chromedp.Run(b.Ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	out := filepath.Join(ArtifactDir(t), name)
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", out)
	return out
}
