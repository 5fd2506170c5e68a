import { useEffect, useState } from "react";
import { apiKey, loadConfig, setApiKey } from "./api";
import { ErrorBox, message } from "./common";
import { Inbox, RunsList, SignIn, WorkflowPage, Workflows } from "./pages";
import { Link, usePath } from "./router";
import { RunPage } from "./RunPage";

function Page({ path }: { path: string }) {
  const run = /^\/runs\/([^/]+)/.exec(path);
  if (run) return <RunPage key={run[1]} id={decodeURIComponent(run[1])} />;
  const wf = /^\/workflows\/([^/]+)/.exec(path);
  if (wf) return <WorkflowPage key={wf[1]} id={decodeURIComponent(wf[1])} />;
  if (path.startsWith("/workflows")) return <Workflows />;
  if (path.startsWith("/approvals")) return <Inbox />;
  return <RunsList />;
}

export function App() {
  const path = usePath();
  const [signedIn, setSignedIn] = useState(apiKey() !== null);
  const [configError, setConfigError] = useState<string | null>(null);
  useEffect(() => {
    loadConfig().catch((e) => setConfigError(message(e)));
  }, []);
  if (configError) return <ErrorBox error={configError} />;
  if (!signedIn) return <SignIn onSignedIn={() => setSignedIn(true)} />;
  const signOut = () => {
    setApiKey(null);
    setSignedIn(false);
  };
  return (
    <>
      <nav className="top">
        <b>AOB</b>
        <Link to="/">Runs</Link>
        <Link to="/approvals">Approvals</Link>
        <Link to="/workflows">Workflows</Link>
        <span className="spacer" />
        <button type="button" onClick={signOut}>
          Sign out
        </button>
      </nav>
      <Page path={path} />
    </>
  );
}
