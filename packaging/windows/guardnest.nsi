; GuardNest's Windows setup program: one user, no administrator.
;
; Built offline on Linux by `cargo xtask dist` with Debian's makensis (3.08):
;
;   makensis -V2 -DVERSION=0.1.0 -DBINDIR=/path/to/exes -DOUTFILE=/path/to/setup.exe \
;            -DICON=/path/to/icon.ico packaging/windows/guardnest.nsi
;
;   VERSION   the version shown in "Apps & features" (the workspace version)
;   BINDIR    the folder holding guardnest.exe, guardnest-app.exe and WebView2Loader.dll
;             (the x86_64-pc-windows-gnu build; the MinGW build of the app links Microsoft's
;             WebView2 loader dynamically, and cargo puts the DLL beside the .exe)
;   OUTFILE   the setup program to write (GuardNest-<version>-x64-setup.exe)
;   ICON      the app's icon (app/src-tauri/icons/icon.ico)
;   COMPRESSOR optional: makensis's compressor (default "/SOLID lzma"; CI packs debug builds
;             with zlib, several times faster)
;
; What it does (README: "Install", "Windows"):
;   - installs into %LOCALAPPDATA%\Programs\GuardNest (or where an earlier install is), with
;     a Start-menu shortcut and the HKCU "Apps & features" entry;
;   - before replacing anything, stops every running GuardNest of this user with the NEW
;     guardnest.exe (`stop --all`, which restores the user's proxy settings) and starts what
;     it stopped again afterwards (`start-again`): an upgrade in place keeps the data dir;
;   - "Start GuardNest at login" is the app's own setting (`guardnest-app.exe start-at-login`);
;   - warns, without stopping, when the WebView2 runtime the window needs is missing;
;   - writes what it did to install.log in the install folder (the only trace of a /S run).
;
; Command line: /S silent; /STARTATLOGIN=1 or =0 turns starting at login on or off (absent:
; as it was; a first install leaves it off); /D=DIR the install folder (last, unquoted).
; The uninstaller: /S silent; /REMOVEDATA also removes the user's settings and lists.
;
; The 64-bit target only: GuardNest's programs are x86-64 anyway, and NSIS's default x86
; stubs would need 32-bit Wine (wine32, i386 multiarch) to be tested in CI.

Unicode true
Target amd64-unicode
!ifndef COMPRESSOR
  !define COMPRESSOR "/SOLID lzma"
!endif
SetCompressor ${COMPRESSOR}
RequestExecutionLevel user
ManifestDPIAware true

!ifndef VERSION | BINDIR | OUTFILE | ICON
  !error "pass -DVERSION=... -DBINDIR=... -DOUTFILE=... -DICON=... (see the top of this file)"
!endif

!define PRODUCT "GuardNest"
!define PUBLISHER "GuardNest"
!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\GuardNest"
!define RUN_KEY "Software\Microsoft\Windows\CurrentVersion\Run"
!define RUNONCE_KEY "Software\Microsoft\Windows\CurrentVersion\RunOnce"
!define STARTUP_APPROVED_KEY "Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\Run"
; The autostart plugin's value name (the app's productName) and the RunOnce repair's
; (guardnest_sysproxy::login::ENTRY).
!define RUN_VALUE "GuardNest"
!define REPAIR_VALUE "org.guardnest.repair"
!define WEBVIEW2_GUID "{F3017226-FE2A-4295-8BDF-00C3A9A7E4C5}"
!define WEBVIEW2_MISSING "GuardNest's window needs the Microsoft Edge WebView2 Runtime: install $\"WebView2 Runtime$\" from Microsoft (Evergreen Standalone Installer), then start GuardNest again."

Name "${PRODUCT}"
OutFile "${OUTFILE}"
InstallDir "$LOCALAPPDATA\Programs\GuardNest"
; An upgrade goes where the earlier install is.
InstallDirRegKey HKCU "${UNINSTALL_KEY}" "InstallLocation"
BrandingText "${PRODUCT} ${VERSION}"
ShowInstDetails show
ShowUninstDetails show

!include "MUI2.nsh"
!include "LogicLib.nsh"
!include "FileFunc.nsh"
!include "TextFunc.nsh"
!include "Sections.nsh"

!define MUI_ICON "${ICON}"
!define MUI_UNICON "${ICON}"
!define MUI_ABORTWARNING
!define MUI_COMPONENTSPAGE_NODESC
!define MUI_FINISHPAGE_RUN "$INSTDIR\guardnest-app.exe"
!define MUI_FINISHPAGE_RUN_TEXT "Start GuardNest now"

!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_COMPONENTS
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH

!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_COMPONENTS
!insertmacro MUI_UNPAGE_INSTFILES

!insertmacro MUI_LANGUAGE "English"

Var LoginWasOn   ; 1 when the app's start-at-login entry was there before this install
Var Log          ; the open install.log, while sections run
Var Running      ; the file where `stop --save-running` listed what it stopped

; --- The install log -----------------------------------------------------------------------
; One line to the details view and to install.log (UTF-16LE, as Notepad reads it).
!macro LOG TEXT
  DetailPrint `${TEXT}`
  ${If} $Log != ""
    FileWriteUTF16LE $Log `${TEXT}$\r$\n`
  ${EndIf}
!macroend
!define LOG "!insertmacro LOG"

; Runs COMMAND, waits, logs its exit code and output; leaves the exit code in $0 ("timeout"
; when it printed nothing for SECONDS and was ended: no setup waits forever on a child).
!macro RUN SECONDS COMMAND
  ${LOG} `running ${COMMAND}`
  nsExec::ExecToStack /TIMEOUT=${SECONDS}000 '${COMMAND}'
  Pop $0
  Pop $1
  ${TrimNewLines} "$1" $1
  ${LOG} "  exit $0: $1"
!macroend
!define RUN "!insertmacro RUN"

; --- Files ---------------------------------------------------------------------------------
; The one list of what is installed, used by the install and the uninstall alike.
!macro FILES ACTION
  !insertmacro ${ACTION} "guardnest.exe"
  !insertmacro ${ACTION} "guardnest-app.exe"
  !insertmacro ${ACTION} "WebView2Loader.dll"
!macroend
!macro PUT NAME
  File "${BINDIR}\${NAME}"
!macroend
!macro REMOVE NAME
  Delete "$INSTDIR\${NAME}"
!macroend

Section "GuardNest (the app and the guardnest command)" SecMain
  SectionIn RO
  CreateDirectory "$INSTDIR"
  FileOpen $Log "$INSTDIR\install.log" w
  FileWriteUTF16LE /BOM $Log ""
  ${LOG} "GuardNest ${VERSION} setup, into $INSTDIR"

  ; Stop every GuardNest of this user first, with the new guardnest.exe (an old one may not
  ; know `stop`): each one restores the user's proxy settings as it quits, and none holds a
  ; file this setup replaces. Never replace files under a GuardNest that did not stop.
  InitPluginsDir
  File "/oname=$PLUGINSDIR\guardnest.exe" "${BINDIR}\guardnest.exe"
  StrCpy $Running "$PLUGINSDIR\running.txt"
  ${RUN} 120 '"$PLUGINSDIR\guardnest.exe" stop --all --save-running "$Running"'
  ${If} $0 != 0
    ${RUN} 120 '"$PLUGINSDIR\guardnest.exe" stop --all --save-running "$Running.2"'
  ${EndIf}
  ${If} $0 != 0
    ${LOG} "GuardNest is still running and could not be stopped: nothing was changed."
    IfSilent +2
    MessageBox MB_ICONSTOP "GuardNest is running and could not be stopped. Quit GuardNest (tray menu, Quit), then run this setup again. Nothing was changed."
    FileClose $Log
    SetErrorLevel 2
    Abort
  ${EndIf}
  ; What the proxy settings are while no GuardNest runs (they are the user's own again).
  ReadRegDWORD $2 HKCU "Software\Microsoft\Windows\CurrentVersion\Internet Settings" "ProxyEnable"
  ReadRegStr $3 HKCU "Software\Microsoft\Windows\CurrentVersion\Internet Settings" "ProxyServer"
  ReadRegStr $4 HKCU "Software\Microsoft\Windows\CurrentVersion\Internet Settings" "AutoConfigURL"
  ${LOG} "proxy settings with no GuardNest running: ProxyEnable=$2 ProxyServer=$3 AutoConfigURL=$4"

  SetOutPath "$INSTDIR"
  SetOverwrite on
  !insertmacro FILES PUT
  WriteUninstaller "$INSTDIR\uninstall.exe"
  ${LOG} "copied guardnest.exe, guardnest-app.exe, WebView2Loader.dll, uninstall.exe"

  CreateShortCut "$SMPROGRAMS\GuardNest.lnk" "$INSTDIR\guardnest-app.exe" "" "$INSTDIR\guardnest-app.exe" 0
  ${LOG} "Start menu: $SMPROGRAMS\GuardNest.lnk"

  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayName" "${PRODUCT}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "Publisher" "${PUBLISHER}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayIcon" "$INSTDIR\guardnest-app.exe,0"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKCU "${UNINSTALL_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoRepair" 1
  ${GetSize} "$INSTDIR" "/S=0K" $0 $1 $2
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "EstimatedSize" $0
  ${LOG} "Apps & features entry: HKCU\${UNINSTALL_KEY} (${VERSION}, $0 KB)"
SectionEnd

Section /o "Start GuardNest at login" SecLogin
  ; The app's own setting: the same entry its switch and tray menu write.
  ${RUN} 60 '"$INSTDIR\guardnest-app.exe" start-at-login on'
SectionEnd

Section "-after"
  ${IfNot} ${SectionIsSelected} ${SecLogin}
  ${AndIf} $LoginWasOn == 1
    ${RUN} 60 '"$INSTDIR\guardnest-app.exe" start-at-login off'
  ${EndIf}

  ; Start again what was running before the setup stopped it, as it was started.
  ${If} ${FileExists} "$Running"
    ${RUN} 60 '"$INSTDIR\guardnest.exe" start-again "$Running"'
  ${EndIf}
  ${If} ${FileExists} "$Running.2"
    ${RUN} 60 '"$INSTDIR\guardnest.exe" start-again "$Running.2"'
  ${EndIf}

  ; The window needs WebView2; the guardnest command does not, so this only warns.
  Call WebView2Version
  Pop $0
  ${If} $0 == ""
    ${LOG} "${WEBVIEW2_MISSING}"
    IfSilent +2
    MessageBox MB_ICONINFORMATION "${WEBVIEW2_MISSING}"
  ${Else}
    ${LOG} "WebView2 Runtime $0 found"
  ${EndIf}
  ${LOG} "done"
  FileClose $Log
  StrCpy $Log ""
SectionEnd

Function .onInit
  ; Start at login: the box shows what will be true after the install.
  ReadRegStr $0 HKCU "${RUN_KEY}" "${RUN_VALUE}"
  ${If} $0 != ""
    StrCpy $LoginWasOn 1
  ${Else}
    StrCpy $LoginWasOn 0
  ${EndIf}
  ${GetParameters} $1
  ClearErrors
  ${GetOptions} $1 "/STARTATLOGIN=" $2
  ${If} ${Errors}
    StrCpy $2 $LoginWasOn
  ${EndIf}
  ${If} $2 == 1
    !insertmacro SelectSection ${SecLogin}
  ${Else}
    !insertmacro UnselectSection ${SecLogin}
  ${EndIf}
FunctionEnd

; The installed WebView2 Runtime's version ("" when there is none), where Microsoft's
; "Distribute your app and the WebView2 Runtime" says to look: the `pv` value, not empty
; and not 0.0.0.0, per machine (64-bit and 32-bit views) or per user.
Function WebView2Version
  ReadRegStr $0 HKLM "SOFTWARE\WOW6432Node\Microsoft\EdgeUpdate\Clients\${WEBVIEW2_GUID}" "pv"
  ${If} $0 == ""
  ${OrIf} $0 == "0.0.0.0"
    ReadRegStr $0 HKLM "SOFTWARE\Microsoft\EdgeUpdate\Clients\${WEBVIEW2_GUID}" "pv"
  ${EndIf}
  ${If} $0 == ""
  ${OrIf} $0 == "0.0.0.0"
    ReadRegStr $0 HKCU "Software\Microsoft\EdgeUpdate\Clients\${WEBVIEW2_GUID}" "pv"
  ${EndIf}
  ${If} $0 == "0.0.0.0"
    StrCpy $0 ""
  ${EndIf}
  Push $0
FunctionEnd

; --- Uninstall -----------------------------------------------------------------------------

Section "un.GuardNest" SecUninstall
  SectionIn RO
  ; The install folder goes away: this run's log is kept in %TEMP%.
  FileOpen $Log "$TEMP\GuardNest-uninstall.log" w
  FileWriteUTF16LE /BOM $Log ""
  ${LOG} "GuardNest ${VERSION} uninstall, from $INSTDIR"
  ; Nobody is left offline: every GuardNest of this user quits and restores the proxy
  ; settings, and the repair puts back what a crashed one left. If that fails, guardnest.exe
  ; (the repair) stays installed and nothing is removed.
  ${If} ${FileExists} "$INSTDIR\guardnest.exe"
    ${RUN} 120 '"$INSTDIR\guardnest.exe" stop --all'
    ${If} $0 != 0
      ${RUN} 120 '"$INSTDIR\guardnest.exe" stop --all'
    ${EndIf}
  ${Else}
    ; Someone deleted it: nothing here can stop or repair anything, so do not stand in the way.
    ${LOG} "$INSTDIR\guardnest.exe is missing: nothing to stop GuardNest with"
    StrCpy $0 0
  ${EndIf}
  ${If} $0 != 0
    ${LOG} "GuardNest could not be stopped: nothing was removed."
    IfSilent +2
    MessageBox MB_ICONSTOP "GuardNest could not be stopped, so it was not removed. Quit GuardNest (tray menu, Quit), then uninstall again."
    FileClose $Log
    SetErrorLevel 2
    Abort
  ${EndIf}
  ; Belt and braces: the one-shot repair and the login entry, whoever wrote them.
  DeleteRegValue HKCU "${RUNONCE_KEY}" "${REPAIR_VALUE}"
  DeleteRegValue HKCU "${RUN_KEY}" "${RUN_VALUE}"
  DeleteRegValue HKCU "${STARTUP_APPROVED_KEY}" "${RUN_VALUE}"

  Delete "$SMPROGRAMS\GuardNest.lnk"
  !insertmacro FILES REMOVE
  Delete "$INSTDIR\install.log"
  Delete "$INSTDIR\uninstall.exe"
  RMDir "$INSTDIR"
  DeleteRegKey HKCU "${UNINSTALL_KEY}"
  ${LOG} "removed the program files, the Start-menu shortcut and the Apps & features entry"
SectionEnd

Section /o "un.Also remove my settings (lists, allowlist, added lists)" SecRemoveData
  ; After the stop above: the repair needed the snapshot in the data dir.
  RMDir /r "$LOCALAPPDATA\guardnest"
  ; The window's WebView2 data (the Tauri identifier's folder).
  RMDir /r "$LOCALAPPDATA\org.guardnest.app"
  ${LOG} "removed your settings and lists: $LOCALAPPDATA\guardnest"
SectionEnd

Section "-un.end"
  ${IfNot} ${SectionIsSelected} ${SecRemoveData}
    ${LOG} "kept your settings and lists: $LOCALAPPDATA\guardnest"
  ${EndIf}
  ${LOG} "done"
  FileClose $Log
  StrCpy $Log ""
SectionEnd

Function un.onInit
  ${GetParameters} $1
  ClearErrors
  ${GetOptions} $1 "/REMOVEDATA" $2
  ${IfNot} ${Errors}
    !insertmacro SelectSection ${SecRemoveData}
  ${EndIf}
FunctionEnd
